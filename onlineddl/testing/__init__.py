"""Test and demo plumbing shipped with the package: a throwaway local server
(`python -m onlineddl.testing.localserver start|stop`), used by the test suite,
scripts/demo and scripts/bench. Nothing in the engine imports it."""
