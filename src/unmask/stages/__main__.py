"""``python -m unmask.stages NAME [--params FILE] [--set KEY=VALUE ...]`` (:mod:`unmask.stages`)."""

from unmask.stages import main

if __name__ == "__main__":
    main()
