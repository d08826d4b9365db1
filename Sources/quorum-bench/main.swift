// quorum-bench: a load generator for etcd-compatible servers (Quorum, etcd) on the etcd v3 gRPC API.
//
// Modelled on etcd's tools/benchmark and on ../shared/bench/etcdload, with the same workloads, flags and JSON
// fields, so its numbers can be put beside those of etcd's own Go client: if the two clients disagree about a
// server, the difference is the client's, not the server's.

await QuorumBench.main()
