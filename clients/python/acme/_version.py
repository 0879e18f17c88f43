"""The package's version, kept equal to the C++ project's (CMakeLists.txt `project(acme VERSION ...)`)."""

__version__ = "0.1.0"
