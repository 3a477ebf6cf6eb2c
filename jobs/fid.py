"""`python -m jobs.fid CONFIG [key.path=value ...]`: generate and report FID, for `ray job submit`."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["fid", *sys.argv[1:]]))
