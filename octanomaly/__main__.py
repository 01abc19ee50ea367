"""``python -m octanomaly``: the same as the ``octanomaly`` console script."""

from octanomaly.cli import main

if __name__ == "__main__":
    main()
