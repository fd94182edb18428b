"""Expectation suites for the quality gate, versioned with the code."""
