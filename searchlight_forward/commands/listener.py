"""searchlight-forward-listener --config-file FILE"""
from __future__ import annotations

from searchlight_forward.commands.common import setup
from searchlight_forward.listener import service


def main(argv: list[str] | None = None) -> None:
    service.run(setup(argv))


if __name__ == "__main__":
    main()
