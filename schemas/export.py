"""Write one JSON Schema file per topic, for integrators outside Python."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.topics import ALL_TOPICS

JSON_DIR = Path(__file__).parent / "json"


def render() -> dict[str, str]:
    """Return file name -> JSON Schema text for every topic's value model."""
    files: dict[str, str] = {}
    for spec in ALL_TOPICS:
        schema = spec.value.model_json_schema(mode="serialization")
        schema["$id"] = f"urn:complaints:schema:{spec.name}:v{spec.value.SCHEMA_VERSION}"
        schema["description"] = spec.description
        schema["x-kafka-topic"] = spec.name
        schema["x-kafka-key"] = spec.key
        files[f"{spec.name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def export(out_dir: Path = JSON_DIR) -> list[Path]:
    """Write the schema files into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
