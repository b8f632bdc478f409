"""The Docker Engine API (HTTP/1.1 on a second Unix socket), a front end to the supervisor.

``_http``: h11 on Trio; ``_shapes``: Docker's JSON and boxd's records, both ways;
``_server``: connections, and the areas' routes gathered by ``_router``; ``_api``: what
the areas share; one module per area (``_containers``, ``_attach``, ``_images``,
``_networks``, ``_system``).
"""

from ._server import DockerApi as DockerApi
from ._server import serve_docker as serve_docker
