"""The README's first screen and CI stay true to each other."""

from tests.conftest import ROOT


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_command = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in line]
    assert len(ci_command) == 1 and ci_command[0] in readme
    first_screen = "\n".join(readme.splitlines()[:25])
    assert ci_command[0] in first_screen and "archsim sweep hw_configs/cim_*.yaml" in first_screen
