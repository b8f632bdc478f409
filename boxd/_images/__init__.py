"""Images: references, the content-addressed store, safe layer unpacking, registries.

Each module holds one concept: :mod:`.reference` (Docker's grammar of image names),
:mod:`.unpack` (a layer tar into its own directory, hostile until proven otherwise),
:mod:`.store` (blobs by digest, unpacked layers by diff_id, tags), :mod:`.registry` (the
OCI distribution protocol over httpx), :mod:`.pull` (manifests to a stored image) and
:mod:`.config` (an image's configuration applied to a container's).
"""
