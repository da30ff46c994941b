"""`python -m training.merge`: see `training.merge.cli`."""

from .cli import main


main()
