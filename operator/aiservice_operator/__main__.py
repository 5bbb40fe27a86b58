"""`python -m aiservice_operator`: run the operator (all namespaces unless configured).

Configured from the environment (the chart sets it); `--help` lists the variables. A
malformed setting stops it at once, with a message naming the variable.
"""

import argparse
import os
import sys

from aiservice_operator.cluster import config

if __name__ == "__main__":
    argparse.ArgumentParser(
        prog="python -m aiservice_operator",
        description="Run the aiservice-operator until SIGTERM/SIGINT. "
        "Settings come from the environment variables below.",
        epilog=config.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args()
    try:
        config.Config.from_env(os.environ)
    except config.ConfigError as err:
        sys.exit(f"aiservice-operator: {err}")
    from aiservice_operator.cluster.handlers import main

    main()
