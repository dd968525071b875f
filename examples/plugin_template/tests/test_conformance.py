"""The variant passes the conformance suite every attnbench built-in passes."""

from harness.testing import assert_conforms


def test_conforms():
    assert_conforms("example_query_chunked")
