"""Print the configuration reference (Markdown) from the settings schemas.

The README's tables are this script's output; tests/test_config.py checks they agree.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from agent.config import AgentSettings
from server.config import ServerSettings


def table(model: type[BaseModel]) -> str:
    rows = ["| TOML key | environment | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if field.default_factory is not None:
            default = "(computed)"
        elif field.default is PydanticUndefined or field.default in (None, ""):
            default = "—"
        else:
            default = f"`{field.default}`"
        rows.append(f"| `{name}` | `SOHOA_{name.upper()}` | {default} | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print("### Agent (`/etc/sohoa/agent.toml`)\n")
    print(table(AgentSettings))
    print("\n### Server (`/etc/sohoa/server.toml`)\n")
    print(table(ServerSettings))
