// cert-manager's CRDs (deploy/crds of its module source), copied into the tool cache by
// scripts/build-tools.sh for the deploy/cert-manager overlay. Nothing here is built or
// imported, so `go mod tidy` would drop the requirement: edit the version by hand (and go.sum:
// `go mod download -json MODULE@VERSION` prints both sums).
module promfed.test/tools/crds

go 1.26.0

require github.com/cert-manager/cert-manager v1.21.2
