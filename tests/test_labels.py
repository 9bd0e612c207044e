import pytest

from disclatent.data import labels as lab


@pytest.mark.parametrize(
    ("ivd", "level"),
    [
        (1, "L5/S1"),
        (2, "L4/L5"),
        (3, "L3/L4"),
        (4, "L2/L3"),
        (5, "L1/L2"),
        (6, "T12/L1"),
        (7, "T11/T12"),
        (17, "T1/T2"),
        (18, "C7/T1"),
    ],
)
def test_level_names_follow_spider(ivd, level):
    assert lab.level_name(ivd) == level
    assert lab.ivd_label_of_level(level) == ivd
    assert lab.disc_mask_label(ivd) == 200 + ivd
    assert lab.ivd_label_of_mask_value(200 + ivd) == ivd


def test_vertebrae_count_upward_from_l5():
    assert [lab.vertebra_name(k) for k in (1, 5, 6, 17, 18)] == ["L5", "L1", "T12", "T1", "C7"]


@pytest.mark.parametrize(
    ("value", "structure"),
    [
        (0, "background"),
        (1, "vertebra"),
        (25, "vertebra"),
        (100, "spinal_canal"),
        (101, "partial_vertebra"),
        (125, "partial_vertebra"),
        (201, "disc"),
        (225, "disc"),
    ],
)
def test_structures(value, structure):
    assert lab.structure_of(value) == structure
    assert lab.is_known_label(value)


@pytest.mark.parametrize("value", [26, 99, 126, 200, 226, 255, -1])
def test_unknown_values_rejected(value):
    assert not lab.is_known_label(value)
    with pytest.raises(ValueError, match=str(value)):
        lab.structure_of(value)


def test_describe_label():
    assert lab.describe_label(203) == "disc L3/L4"
    assert lab.describe_label(106) == "partial vertebra T12"
    with pytest.raises(ValueError):
        lab.ivd_label_of_mask_value(1)
