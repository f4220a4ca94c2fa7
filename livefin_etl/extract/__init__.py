"""Landing -> raw: decode, map, enforce the contract, hash PII, quarantine, load, manifest.

``read`` turns landing files into canonical polars frames, ``rules`` applies the source
contract to rows, ``load`` writes a chunk of partitions in one transaction and ``tables``
creates what it writes to.
"""

from livefin_etl.extract.load import (
    ExtractErrors,
    PartitionRefused,
    extract_partition,
    extract_partitions,
    quarantine_rows,
)
from livefin_etl.extract.read import (
    FORMAT_EXT,
    FileBatch,
    FileRejected,
    landing_files,
    landing_format,
    partition_dir,
    read_file,
)
from livefin_etl.extract.rules import POLARS_TYPES, hash_pii, hash_values
from livefin_etl.extract.tables import (
    LINEAGE,
    ensure_meta_tables,
    ensure_raw_table,
    ensure_tables,
)

__all__ = [
    "FORMAT_EXT",
    "LINEAGE",
    "POLARS_TYPES",
    "ExtractErrors",
    "FileBatch",
    "FileRejected",
    "PartitionRefused",
    "ensure_meta_tables",
    "ensure_raw_table",
    "ensure_tables",
    "extract_partition",
    "extract_partitions",
    "hash_pii",
    "hash_values",
    "landing_files",
    "landing_format",
    "partition_dir",
    "quarantine_rows",
    "read_file",
]
