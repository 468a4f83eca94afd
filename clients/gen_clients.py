"""Regenerates the committed client code from protos/: Go and TypeScript.

- Go: clients/go/mamv1/, by protoc-gen-go and protoc-gen-go-grpc at the versions pinned in
  clients/go/go.mod (`tool` directives), built with `go build`.
- TypeScript: clients/typescript/src/gen/, by ts-proto (outputServices=grpc-js) from
  clients/typescript/package-lock.json (`npm ci` first), plus the google.rpc error details
  vendored in clients/typescript/proto/.

Java is not committed: Maven generates it at build (clients/java/pom.xml).
protoc is grpc_tools' (pinned in uv.lock). Run through `make clients`; `make check-clients`
generates into a scratch directory and fails when the committed code differs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
WELL_KNOWN = Path(protoc.__file__).parent / "_proto"

GO_DIR = ROOT / "clients" / "go"
GO_MODULE = "github.com/mam-gateway/mam-gateway/clients/go"
GO_PACKAGE_DIR = "mamv1"
GO_PLUGINS = (
    "google.golang.org/protobuf/cmd/protoc-gen-go",
    "google.golang.org/grpc/cmd/protoc-gen-go-grpc",
)

TS_DIR = ROOT / "clients" / "typescript"
TS_VENDORED = TS_DIR / "proto"
TS_OUT = "src/gen"
TS_OPTIONS = ",".join(
    [
        "outputServices=grpc-js",
        "env=node",
        "esModuleInterop=true",
        "forceLong=bigint",
        "useOptionals=none",
        "exportCommonSymbols=false",  # no per-file protobufPackage etc.: flat re-exports work
    ]
)


def _proto_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.proto"))


def _protoc(args: list[str]) -> None:
    if protoc.main(["protoc", *args]) != 0:
        raise SystemExit(f"protoc failed: {' '.join(args)}")


def _replace(raw: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(raw, out)


def generate_go(out: Path) -> None:
    """Writes the Go package (github.com/.../clients/go/mamv1) into out."""
    files = _proto_files(PROTOS)
    # protos/ has no go_package options: map every file to the one Go package.
    mappings = ",".join(f"M{name}={GO_MODULE}/{GO_PACKAGE_DIR}" for name in files)
    with tempfile.TemporaryDirectory() as scratch:
        bin_dir = Path(scratch) / "bin"
        raw = Path(scratch) / "raw"
        raw.mkdir()
        subprocess.run(["go", "build", "-o", f"{bin_dir}/", *GO_PLUGINS], cwd=GO_DIR, check=True)
        _protoc(
            [
                f"-I{PROTOS}",
                f"-I{WELL_KNOWN}",
                f"--plugin=protoc-gen-go={bin_dir / 'protoc-gen-go'}",
                f"--plugin=protoc-gen-go-grpc={bin_dir / 'protoc-gen-go-grpc'}",
                f"--go_out={raw}",
                f"--go_opt=module={GO_MODULE},{mappings}",
                f"--go-grpc_out={raw}",
                f"--go-grpc_opt=module={GO_MODULE},{mappings}",
                *files,
            ]
        )
        _replace(raw / GO_PACKAGE_DIR, out)


def generate_typescript(out: Path) -> None:
    """Writes the ts-proto modules (mam/v1, google/rpc, google/protobuf) into out."""
    plugin = TS_DIR / "node_modules" / ".bin" / "protoc-gen-ts_proto"
    if not plugin.exists():
        raise SystemExit(f"{plugin} is missing: run `npm ci` in {TS_DIR}")
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "raw"
        raw.mkdir()
        _protoc(
            [
                f"-I{PROTOS}",
                f"-I{TS_VENDORED}",
                f"-I{WELL_KNOWN}",
                f"--plugin=protoc-gen-ts_proto={plugin}",
                f"--ts_proto_out={raw}",
                f"--ts_proto_opt={TS_OPTIONS}",
                *_proto_files(PROTOS),
                *_proto_files(TS_VENDORED),
            ]
        )
        _replace(raw, out)


TARGETS = (
    ("go", GO_DIR / GO_PACKAGE_DIR, generate_go),
    ("typescript", TS_DIR / TS_OUT, generate_typescript),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed code is stale")
    parser.add_argument("--only", choices=[name for name, _, _ in TARGETS], action="append")
    args = parser.parse_args()
    targets = [t for t in TARGETS if not args.only or t[0] in args.only]
    if not args.check:
        for _, out, generate in targets:
            generate(out)
            print(f"generated {out.relative_to(ROOT)}")
        return 0
    stale: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, out, generate in targets:
            fresh = Path(scratch) / name
            generate(fresh)
            stale += [str((out / f).relative_to(ROOT)) for f in _differences(fresh, out)]
    if stale:
        print("generated client code is stale; run `make clients` and commit:", file=sys.stderr)
        for name in stale:
            print(f"  {name}", file=sys.stderr)
        return 1
    print("generated client code is up to date")
    return 0


def _differences(fresh: Path, committed: Path) -> list[str]:
    def files(root: Path) -> dict[str, bytes]:
        if not root.exists():
            return {}
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    a, b = files(fresh), files(committed)
    return sorted(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))


if __name__ == "__main__":
    sys.exit(main())
