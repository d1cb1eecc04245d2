"""The council service: what receives the hubs' uploads and serves the central team.

Nothing here may import hub hardware libraries: the council runs on an ordinary server.
"""
