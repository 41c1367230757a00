"""Fetches one target with python-tuf's reference client (tuf.ngclient.Updater).

    ngclient_fetch.py ROOT_JSON METADATA_DIR METADATA_URL TARGET_URL TARGET_DIR NAME

Trusts ROOT_JSON (bootstrap), refreshes, looks NAME up (delegations included) and downloads it
into TARGET_DIR. Prints one JSON object: {"name", "length", "hashes", "custom", "path"}.
Exit status 0 on success; 1 with "refused: ..." on stderr when python-tuf refuses the
repository's metadata or the target (RepositoryError), so a caller can tell a refusal from a
network failure (DownloadError, exit 2) or a bug in this script (a traceback, exit 1 without
"refused").
"""

import json
import sys
from pathlib import Path

from tuf.api.exceptions import DownloadError, RepositoryError
from tuf.ngclient import Updater


def main() -> int:
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    root_json, metadata_dir, metadata_url, target_url, target_dir, name = sys.argv[1:]
    Path(metadata_dir).mkdir(parents=True, exist_ok=True)
    updater = Updater(
        metadata_dir=metadata_dir,
        metadata_base_url=metadata_url,
        target_base_url=target_url,
        target_dir=target_dir,
        bootstrap=Path(root_json).read_bytes(),
    )
    try:
        updater.refresh()
        info = updater.get_targetinfo(name)
        if info is None:
            print(f"refused: no target {name!r} in the signed metadata", file=sys.stderr)
            return 1
        path = updater.download_target(info)
    except RepositoryError as e:
        print(f"refused: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except DownloadError as e:
        print(f"download failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "name": info.path,
                "length": info.length,
                "hashes": info.hashes,
                "custom": info.custom,
                "path": path,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
