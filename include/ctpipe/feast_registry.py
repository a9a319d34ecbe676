"""A Feast file registry that a reader never sees half-written.

Feast's ``FileRegistryStore`` rewrites ``registry.db`` in place: it truncates the file, then
writes the new one. A feature server refreshing its registry at that moment reads an empty
or partial file, and answers "Feature service ... does not exist" to every request until
its next refresh: ``bench.feature_server`` met it while the ``features`` DAG materialized.
``AtomicFileRegistryStore`` writes the new registry beside the old one and renames it over
it, so every reader sees one or the other, whole. The settings layer names it as the
``registry_store_type`` of a file registry (``CTPIPE_FEAST_REGISTRY``) unless you name another.
"""

from __future__ import annotations

import os
import tempfile
import uuid

from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.utils import _utc_now


class AtomicFileRegistryStore(FileRegistryStore):
    def _write_registry(self, registry_proto: RegistryProto) -> None:
        registry_proto.version_id = str(uuid.uuid4())
        registry_proto.last_updated.FromDatetime(_utc_now())
        folder = self._filepath.parent
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{self._filepath.name}.", dir=folder)
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(registry_proto.SerializeToString())
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self._filepath)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
