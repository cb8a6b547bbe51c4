"""Tests of the service runtime (templates/project/package/runtime)."""
