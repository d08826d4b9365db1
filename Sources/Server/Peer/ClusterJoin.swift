import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Node

/// How a member started with `--initial-cluster-state=existing` finds out who it is: it asks the other
/// members listed in `--initial-cluster` for the member table, and finds the entry that `etcdctl member add`
/// created with its peer URLs.
enum ClusterJoin {
    static func discover(
        config: NodeConfig, security: any PeerClientSecurity, logger: Logger, timeout: Duration = .seconds(60)
    ) async throws -> NodeConfig.JoinInfo {
        let mine = Set(config.advertisePeerURLs)
        let others = config.initialCluster.filter { $0.name != config.name }.flatMap(\.peerURLs).filter {
            !mine.contains($0)
        }
        guard !others.isEmpty else {
            throw ConfigError(
                "--initial-cluster-state=existing needs the other members' peer URLs in --initial-cluster")
        }
        let deadline = ContinuousClock.now + timeout
        var lastError = "no answer"
        var nextReport = ContinuousClock.now
        while ContinuousClock.now < deadline {
            for text in others {
                guard let url = try? ListenURL(text) else { continue }
                do {
                    let response = try await withGRPCClient(
                        transport: .http2NIOPosix(
                            target: url.peerTarget,
                            transportSecurity: security.transportSecurity(for: url))
                    ) { client in
                        try await Quorumpb_Peer.Client(wrapping: client).members(
                            Quorumpb_MembersRequest(), options: .peerRequest)
                    }
                    let members = response.members.map { m in
                        MemberInfo(
                            id: m.id, name: m.name, peerURLs: m.peerUrls, clientURLs: m.clientUrls,
                            isLearner: m.isLearner)
                    }
                    guard let me = members.first(where: { !Set($0.peerURLs).isDisjoint(with: mine) }) else {
                        throw ConfigError(
                            "member with peer URLs \(config.advertisePeerURLs) has not been added to the cluster: "
                                + "run 'etcdctl member add \(config.name) --peer-urls=\(config.advertisePeerURLs.joined(separator: ","))' first"
                        )
                    }
                    logger.info(
                        "found this member in the existing cluster",
                        metadata: [
                            "member-id": "\(Identity.hex(me.id))", "cluster-id": "\(Identity.hex(response.clusterID))",
                        ])
                    return NodeConfig.JoinInfo(clusterID: response.clusterID, memberID: me.id, members: members)
                } catch let error as ConfigError {
                    throw error
                } catch {
                    lastError = "\(text): \(error)"
                }
            }
            // Say why joining is taking long (a refused certificate, an unreachable member) every few seconds
            // rather than only at the final timeout.
            if ContinuousClock.now >= nextReport {
                logger.warning("cannot reach an existing member yet", metadata: ["error": "\(lastError)"])
                nextReport = ContinuousClock.now + .seconds(5)
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw ConfigError("could not reach any existing member to join the cluster (\(lastError))")
    }
}
