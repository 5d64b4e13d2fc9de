"""``python -m sclens``: the ``sclens`` command line."""

from sclens._cli import run

if __name__ == "__main__":
    run()
