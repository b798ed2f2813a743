from io import StringIO

import pytest
import yaml
from django.core.management import call_command


@pytest.mark.django_db
def test_openapi_schema_generates_without_warnings_and_documents_the_ingest_formats(tmp_path):
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target), stderr=StringIO())
    schema = yaml.safe_load(target.read_text())
    ingest = schema["paths"]["/api/v1/projects/{project_id}/items"]["post"]
    assert set(ingest["requestBody"]["content"]) >= {"application/json", "application/x-ndjson", "text/csv"}
    assert {"/api/v1/projects", "/api/v1/projects/{project_id}/members/{username}"} <= set(schema["paths"])
