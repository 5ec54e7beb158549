// etcd for scripts/kube-local.sh: the etcd server's own entry point, which etcd's module
// keeps in go.etcd.io/etcd/v3 (a main package that cannot be imported).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
