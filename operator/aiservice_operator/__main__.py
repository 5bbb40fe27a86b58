"""`python -m aiservice_operator`: run the operator (all namespaces unless configured)."""

from aiservice_operator.handlers import main

if __name__ == "__main__":
    main()
