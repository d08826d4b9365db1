import Backup

/// What an S3 endpoint (or anything answering on its address) sends back to a member's backups: the body is read as
/// each kind of answer the client reads (a ListObjectsV2 page, a CreateMultipartUpload result, an error document of
/// any status), and as a backup's `manifest.json` fetched from the bucket, whose name, digest and size are then
/// checked as a restore checks them. The HTTP framing around the bodies is SwiftNIO's.
enum S3Target {
    static func run(_ bytes: [UInt8]) {
        if let page = try? S3Responses.listingPage(bytes) {
            for object in page.objects { _ = BackupName(String(object.key.split(separator: "/").last ?? "")) }
        }
        _ = try? S3Responses.uploadID(bytes)
        _ = S3Responses.isErrorDocument(bytes)
        _ =
            S3Error.from(operation: "GET", resource: "s3://fuzz/key", status: 500, body: bytes, requestID: nil)
            .description
        if let manifest = try? BackupManifest.decode(bytes, location: "s3://fuzz/manifest.json") {
            _ = manifest.backupName
            _ = manifest.encoded()
        }
    }
}
