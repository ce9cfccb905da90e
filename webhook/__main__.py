"""``python -m webhook`` works like ``nfsguard``."""

from webhook.cli.main import main

if __name__ == "__main__":
    main()
