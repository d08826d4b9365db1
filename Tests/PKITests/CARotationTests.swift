import Foundation
import TestSupport
import Testing
import X509

@testable import PKI

@Suite("CA rotation")
struct CARotationTests {
    @Test("pure state machine: phases, blocking, and resumable plans")
    func stateMachine() {
        var rotation = CARotation(kind: .clients)
        #expect(rotation.plan(.advance) == .blocked("no clients CA rotation is in progress; start one first"))
        #expect(rotation.plan(.start) == .perform([.stageNextCA, .addNextCAToBundle], reaching: .stagedNewCA))
        rotation.onStepCompleted(
            reaching: .stagedNewCA, previousCAFingerprint: "OLD", newCAFingerprint: "NEW", at: Fixtures.epoch)
        guard case .blocked = rotation.plan(.start) else {
            Issue.record("start must be refused mid-rotation")
            return
        }
        #expect(rotation.plan(.advance) == .perform([.promoteNextCA, .reissueLeaves], reaching: .reissued))
        rotation.onStepCompleted(
            reaching: .reissued, previousCAFingerprint: nil, newCAFingerprint: nil, at: Fixtures.epoch + 1)
        #expect(
            rotation.plan(.advance, leavesOnPreviousCA: ["m2 peer"])
                == .blocked("cannot retire the previous clients CA yet: still signed by it: m2 peer"))
        #expect(
            rotation.plan(.advance) == .perform([.removePreviousCAFromBundle, .deletePreviousCA], reaching: .retired))
        rotation.onStepCompleted(
            reaching: .retired, previousCAFingerprint: nil, newCAFingerprint: nil, at: Fixtures.epoch + 2)
        #expect(rotation.previousCAFingerprint == "OLD" && rotation.newCAFingerprint == "NEW")
        #expect(rotation.history.map(\.phase) == [.stagedNewCA, .reissued, .retired])
        #expect(rotation.plan(.start) == .perform([.stageNextCA, .addNextCAToBundle], reaching: .stagedNewCA))
    }

    /// Serving certificate as a client would see it, and bundles as different clients hold them.
    struct Observer {
        let layout: PKILayout
        let oldBundle: TrustBundle

        func served() throws -> Certificate { try PEMCodec.certificate(at: layout.serverCertificate) }
        func currentBundle() throws -> TrustBundle { try TrustBundle.load(from: layout.trustBundle(.clients)) }

        /// A leaf freshly issued by the current CA verifies against the current bundle.
        func freshClientVerifies(at now: Date, rng: inout SeededRandom) throws -> Bool {
            let out = layout.root.deletingLastPathComponent().appendingPathComponent(
                "client-\(Int(now.timeIntervalSince1970))")
            let result = try ClientCertificateIssuer.issue(
                user: "probe", dataDirectory: layout.dataDirectory, outputDirectory: out, now: now, using: &rng)
            return ChainVerifier.verify(
                result.issued.certificate, against: try currentBundle(), at: now, requiredUsage: .clientAuth
            ).isValid
        }
    }

    @Test("rotation through every phase with a crash between every action; clients stay connected")
    func rotationWithCrashes() throws {
        let dir = TemporaryDirectory()
        var rng = SeededRandom(seed: 100)
        let pki = Fixtures.managed(Fixtures.configuration(dir.url))
        var now = Fixtures.epoch
        _ = try pki.ensure(now: now, using: &rng)
        let layout = pki.layout
        let oldCA = try PEMCodec.certificate(at: layout.caCertificate(.clients))
        let observer = Observer(layout: layout, oldBundle: try TrustBundle.load(from: layout.trustBundle(.clients)))
        let otherMemberLeaf = try PEMCodec.certificate(at: layout.serverCertificate)  // stands in for member 2
        let runner = CARotationRunner(dataDirectory: dir.url, kind: .clients)

        // Step 1: stage. Crash after the first action, then resume.
        now += 3600
        guard case .perform(let stageActions, _) = try runner.state().plan(.start) else {
            throw PKIError.rotation("plan")
        }
        try runner.perform(stageActions[0], state: try runner.state(), now: now, using: &rng)
        #expect(try runner.state().phase == .idle)  // nothing persisted yet
        let staged = try runner.start(now: now, using: &rng)
        #expect(staged.log.first?.hasPrefix("reusing staged CA") == true)
        #expect(try runner.state().phase == .stagedNewCA)
        let newCA = try PEMCodec.certificate(at: layout.caCertificate(.clients, .next))
        let stagedBundle = try observer.currentBundle()
        #expect(stagedBundle.certificates == [oldCA, newCA])
        // Overlap: the served leaf (old CA) verifies for clients holding the old or the new bundle.
        #expect(ChainVerifier.verify(try observer.served(), against: observer.oldBundle, at: now).isValid)
        #expect(ChainVerifier.verify(try observer.served(), against: stagedBundle, at: now).isValid)
        #expect(try observer.freshClientVerifies(at: now, rng: &rng))
        #expect(try pki.ensure(now: now, using: &rng).events.isEmpty)

        // Step 2: promote + reissue. First crash inside promotion: the old CA was kept as -previous and the new
        // certificate written over the current one, but not yet the key.
        now += 3600
        try FileManager.default.copyItem(
            at: layout.caCertificate(.clients), to: layout.caCertificate(.clients, .previous))
        try FileManager.default.copyItem(at: layout.caKey(.clients), to: layout.caKey(.clients, .previous))
        try AtomicFileWriter.write(
            PEMCodec.pem(for: newCA), to: layout.caCertificate(.clients), mode: 0o644, keepPrevious: false)
        #expect {
            try pki.ensure(now: now, using: &rng)
        } throws: { error in
            "\(error)".contains("re-run quorumctl certs rotate-ca")  // mismatch detected, nothing served
        }
        // Second crash: promotion finished, re-issue not started.
        let state2 = try runner.state()
        try runner.perform(.promoteNextCA, state: state2, now: now, using: &rng)
        #expect(try runner.state().phase == .stagedNewCA)
        let reissued = try runner.advance(now: now, using: &rng)
        #expect(reissued.log[0] == "\(newCA.subject) is already the signing CA")
        #expect(reissued.log[1].hasPrefix("re-issued server.crt, admin.crt"))
        #expect(try runner.state().phase == .reissued)
        #expect(try PEMCodec.certificate(at: layout.caCertificate(.clients)) == newCA)
        #expect(try PEMCodec.certificate(at: layout.caCertificate(.clients, .previous)) == oldCA)
        let served = try observer.served()
        #expect(served.issuer == newCA.subject)
        #expect(SubjectNames(certificate: served) == Fixtures.configuration(dir.url).clientNames)
        #expect(ChainVerifier.verify(served, against: try observer.currentBundle(), at: now, host: "10.0.0.1").isValid)
        #expect(ChainVerifier.verify(served, against: TrustBundle(certificates: [newCA], name: "new"), at: now).isValid)
        // A member not yet re-issued still verifies against the bundle.
        #expect(ChainVerifier.verify(otherMemberLeaf, against: try observer.currentBundle(), at: now).isValid)
        #expect(try observer.freshClientVerifies(at: now, rng: &rng))
        #expect(try pki.ensure(now: now, using: &rng).events.isEmpty)

        // Step 3: retire. Refused while another member still serves an old-CA leaf.
        now += 3600
        #expect {
            try runner.advance(now: now, otherMembersLeaves: [otherMemberLeaf], using: &rng)
        } throws: { error in
            "\(error)".contains("still signed by it: CN=member-1")
        }
        try runner.perform(.removePreviousCAFromBundle, state: try runner.state(), now: now, using: &rng)
        #expect(try observer.currentBundle().certificates == [newCA])
        let retired = try runner.advance(now: now, using: &rng)
        #expect(retired.log[0].hasSuffix("no longer trusts the previous CA"))
        #expect(try runner.state().phase == .retired)
        #expect(!Files.exists(layout.caCertificate(.clients, .previous)))
        #expect(!Files.exists(layout.caKey(.clients, .previous)))
        #expect(!Files.tree(layout.caDirectory).contains { $0.contains("-next") })
        #expect(ChainVerifier.verify(try observer.served(), against: try observer.currentBundle(), at: now).isValid)
        #expect(!ChainVerifier.verify(otherMemberLeaf, against: try observer.currentBundle(), at: now).isValid)
        #expect(try observer.freshClientVerifies(at: now, rng: &rng))
        #expect(try pki.ensure(now: now, using: &rng).events.isEmpty)
        // Peers were not touched.
        #expect(try CARotationRunner(dataDirectory: dir.url, kind: .peers).state().phase == .idle)

        let verify = try OpenSSL.run([
            "verify", "-attime", String(Int(now.timeIntervalSince1970)), "-CAfile", layout.trustBundle(.clients).path,
            layout.serverCertificate.path,
        ])
        #expect(verify.status == 0, "\(verify.combined)")
    }

    @Test("every crash point of the full rotation resumes to the same end state")
    func crashAtEveryAction() throws {
        // For each action index k: run actions 0..<k of the step, "crash", then finish with the runner.
        for crashAfter in 0..<2 {
            let dir = TemporaryDirectory()
            var rng = SeededRandom(seed: 200 + UInt64(crashAfter))
            let pki = Fixtures.managed(Fixtures.configuration(dir.url))
            _ = try pki.ensure(now: Fixtures.epoch, using: &rng)
            let runner = CARotationRunner(dataDirectory: dir.url, kind: .peers)
            for request in [CARotation.Request.start, .advance, .advance] {
                let state = try runner.state()
                guard case .perform(let actions, let target) = state.plan(request) else {
                    Issue.record("unexpected plan")
                    return
                }
                for action in actions.prefix(crashAfter) {
                    try runner.perform(action, state: state, now: Fixtures.epoch, using: &rng)
                }
                let result =
                    request == .start
                    ? try runner.start(now: Fixtures.epoch, using: &rng)
                    : try runner.advance(now: Fixtures.epoch, using: &rng)
                #expect(result.to == target)
                let bundle = try TrustBundle.load(from: pki.layout.trustBundle(.peers))
                let peer = try PEMCodec.certificate(at: pki.layout.peerCertificate)
                #expect(
                    ChainVerifier.verify(peer, against: bundle, at: Fixtures.epoch, requiredUsage: .serverAuth).isValid)
                #expect(try pki.ensure(now: Fixtures.epoch, using: &rng).events.isEmpty, "after \(target)")
            }
            #expect(try TrustBundle.load(from: pki.layout.trustBundle(.peers)).certificates.count == 1)
        }
    }

    @Test("an expired CA is fixed by rotate-ca run to completion")
    func expiredCARecovery() throws {
        let dir = TemporaryDirectory()
        var rng = SeededRandom(seed: 300)
        let pki = Fixtures.managed(Fixtures.configuration(dir.url, caValidity: 10 * Fixtures.day))
        _ = try pki.ensure(now: Fixtures.epoch, using: &rng)
        let later = Fixtures.epoch + 20 * Fixtures.day
        #expect(throws: PKIError.self) { try pki.ensure(now: later, using: &rng) }
        for kind in CAKind.allCases {
            let steps = try CARotationRunner(dataDirectory: dir.url, kind: kind).runToCompletion(
                now: later, using: &rng)
            #expect(steps.map(\.to) == [.stagedNewCA, .reissued, .retired])
        }
        let report = try pki.ensure(now: later, using: &rng)
        #expect(report.warnings.isEmpty)
        // The leaves were already re-issued by the rotation; only long-expired material would show up here.
        #expect(report.events.isEmpty)
        let bundle = try TrustBundle.load(from: pki.layout.trustBundle(.clients))
        #expect(bundle.certificates.count == 1)
        #expect(
            ChainVerifier.verify(try PEMCodec.certificate(at: pki.layout.serverCertificate), against: bundle, at: later)
                .isValid)
    }

    @Test("a staged CA from pki init is used by every member; state file is readable JSON")
    func sharedNextCA() throws {
        let dir = TemporaryDirectory()
        var rng = SeededRandom(seed: 400)
        let bundleDir = dir.fileURL("cluster")
        _ = try PKIInit.run(outputDirectory: bundleDir, now: Fixtures.epoch, using: &rng)
        let members = ["m1", "m2"].map {
            Fixtures.managed(Fixtures.configuration(dir.fileURL($0), name: $0, createCAs: false, caSource: bundleDir))
        }
        for member in members { _ = try member.ensure(now: Fixtures.epoch, using: &rng) }
        let nextDir = dir.fileURL("next")
        _ = try PKIInit.run(outputDirectory: nextDir, now: Fixtures.epoch + 60, using: &rng)
        for member in members {
            let runner = CARotationRunner(dataDirectory: member.configuration.dataDirectory, kind: .peers)
            _ = try runner.start(now: Fixtures.epoch + 120, nextCASource: nextDir, using: &rng)
        }
        // m1 re-issues first; m2 (still on the old CA) and m1 trust each other through the overlap bundle.
        let r1 = CARotationRunner(dataDirectory: members[0].configuration.dataDirectory, kind: .peers)
        _ = try r1.advance(now: Fixtures.epoch + 180, using: &rng)
        let peer1 = try PEMCodec.certificate(at: members[0].layout.peerCertificate)
        let peer2 = try PEMCodec.certificate(at: members[1].layout.peerCertificate)
        #expect(
            ChainVerifier.verify(
                peer1, against: try TrustBundle.load(from: members[1].layout.trustBundle(.peers)),
                at: Fixtures.epoch + 180
            ).isValid)
        #expect(
            ChainVerifier.verify(
                peer2, against: try TrustBundle.load(from: members[0].layout.trustBundle(.peers)),
                at: Fixtures.epoch + 180
            ).isValid)
        #expect(throws: PKIError.self) {
            try r1.advance(now: Fixtures.epoch + 240, otherMembersLeaves: [peer2], using: &rng)
        }

        let json = try String(contentsOf: members[0].layout.rotationState(.peers), encoding: .utf8)
        #expect(json.contains("\"phase\" : \"reissued\""))
        #expect(json.contains("\"kind\" : \"peers\""))
    }
}
