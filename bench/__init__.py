"""The benchmark harness of issue 7 (not part of CI); see bench/README.md."""
