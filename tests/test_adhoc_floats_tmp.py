import json, pytest
from tests.test_ingest_api import push
pytestmark = pytest.mark.django_db
@pytest.mark.parametrize("value", [1e300, 1e-300, 0.1, 1e16, 1.5e17, 123456789.123456789, 2**70, -0.0])
def test_float_meta(admin_api, project, value):
    r = [{"external_id": "a", "text": "x", "metadata": {"f": value}}]
    push(admin_api, project, r)
    assert push(admin_api, project, r).json()["unchanged"] == 1
