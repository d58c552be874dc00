"""`python -m mudman` runs one trial (or a Hydra multirun with -m)."""

from mudman.cli import main

if __name__ == "__main__":
    main()
