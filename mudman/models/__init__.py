"""Models: loading (Hub id, local path or offline asset), target-module selection, tiny builders."""
