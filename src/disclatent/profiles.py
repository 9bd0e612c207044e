"""Run profiles: one parameter that sets every size and budget of the study.

* ``quick``: tests and CI; the whole book in a few minutes, numbers not meaningful.
* ``default``: a laptop CPU (2 cores); the whole book in about twenty minutes.
* ``paper``: the published settings (64^3 crops, SwinUNETR-V2, 200/1000-epoch budgets),
  meant for a GPU.

Later pipeline steps add their own fields here, so that a notebook needs only the profile
name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    n_patients: int  # phantom cohort size (T1 + T2 series per patient, 5-7 discs each)
    phantom_seed: int = 0


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", "tests and CI: tiny cohort and models", n_patients=8),
    "default": Profile("default", "a 2-core laptop CPU, about 20 minutes", n_patients=36),
    "paper": Profile("paper", "the published settings, for a GPU", n_patients=60),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
