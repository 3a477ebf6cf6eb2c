"""`python -m jobs.generate CONFIG [key.path=value ...]`: the entrypoint for `ray job submit`."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
