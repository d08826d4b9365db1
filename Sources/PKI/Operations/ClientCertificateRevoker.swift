import Foundation
import X509

/// `quorumctl certs revoke SERIAL…`: adds client certificates to `clients/crl.pem`, signed by the clients CA.
///
/// The CRL is re-issued with a higher cRLNumber each time and keeps every earlier entry, so revocations accumulate.
/// The Server loads it into its client-certificate verification when the file exists.
public enum ClientCertificateRevoker {
    public static func revoke(
        serials: [Certificate.SerialNumber],
        dataDirectory: URL,
        now: Date,
        nextUpdate: Date? = nil
    ) throws -> CertificateRevocationList {
        let layout = PKILayout(dataDirectory: dataDirectory)
        return try PKILock.withLock(layout) {
            guard let authority = try CAStore.load(.clients, layout: layout)?.authority else {
                throw PKIError.certificateAuthorityKeyMissing(
                    usage: .caClients, path: layout.caKey(.clients).path, dataDir: dataDirectory.path)
            }
            var entries: [CertificateRevocationList.Entry] = []
            var number = 1
            if FileManager.default.fileExists(atPath: layout.clientsCRL.path) {
                let existing = try CertificateRevocationList.load(from: layout.clientsCRL)
                if existing.isSignatureValid(from: authority.certificate) {
                    entries = existing.entries
                    number = (existing.crlNumber ?? 0) + 1
                }
            }
            for serial in serials where !entries.contains(where: { $0.serialNumber == serial }) {
                entries.append(.init(serialNumber: serial, revocationDate: now))
            }
            let crl = try CertificateRevocationList.issue(
                revoking: entries, by: authority, crlNumber: number, thisUpdate: now, nextUpdate: nextUpdate)
            try AtomicFileWriter.write(crl.pem, to: layout.clientsCRL, mode: AtomicFileWriter.certificateMode)
            return crl
        }
    }

    /// Parses a serial as printed by `openssl x509 -serial` or by Quorum (hex, optional colons, optional `serial=`).
    public static func parseSerial(_ text: String) -> Certificate.SerialNumber? {
        var hex = text.trimmingCharacters(in: .whitespaces).lowercased()
        if hex.hasPrefix("serial=") { hex.removeFirst("serial=".count) }
        if hex.hasPrefix("0x") { hex.removeFirst(2) }
        hex.removeAll { $0 == ":" }
        guard !hex.isEmpty, hex.count <= 40, hex.allSatisfy(\.isHexDigit) else { return nil }
        if hex.count % 2 == 1 { hex = "0" + hex }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return Certificate.SerialNumber(bytes: bytes)
    }
}
