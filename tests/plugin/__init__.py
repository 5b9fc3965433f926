"""The plugin as users meet it: options, markers, loading, the protocol's counters check, findings and reports.

Plugin behaviour is tested as a black box through ``pytester``.
"""
