"""`python -m mmrec.cli`: as the `mmrec` command."""

from mmrec.cli import main

main()
