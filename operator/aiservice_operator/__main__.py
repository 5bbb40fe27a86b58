"""`python -m aiservice_operator`: run the operator (all namespaces unless configured).

Configured from the environment (the chart sets it); `--help` lists the variables.
"""

import argparse

from aiservice_operator.cluster import config
from aiservice_operator.cluster.handlers import main

if __name__ == "__main__":
    argparse.ArgumentParser(
        prog="python -m aiservice_operator",
        description="Run the aiservice-operator until SIGTERM/SIGINT. "
        "Settings come from the environment variables below.",
        epilog=config.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args()
    main()
