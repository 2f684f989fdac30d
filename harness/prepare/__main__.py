"""`python -m harness.prepare <step>`: see `harness.prepare.cli`."""

from harness.prepare.cli import main

main()
