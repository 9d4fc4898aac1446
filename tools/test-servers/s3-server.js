// The S3 server the remote-storage tests start (tests/remote_servers.cpp): s3rver (an
// S3-compatible server storing objects in a directory) behind a front that checks every
// request's AWS Signature V4 with the `aws4` package, an implementation independent of
// ckptbridge's. s3rver 3.7.1 itself only checks that the access key exists ("Signature version
// 4 calculation is unimplemented"), so without this front a wrong secret would go unnoticed.
//
// Usage: node --openssl-legacy-provider s3-server.js <data-dir> <bucket>...
// (s3rver encrypts ListObjectsV2 continuation tokens with DES, in OpenSSL 3's legacy provider)
// Listens on 127.0.0.1 at a free port and prints "LISTENING <port>" once it answers.
// Key pairs accepted: S3RVER / S3RVER (s3rver's own) and CKBTESTKEY / ckb-test-secret/+=.
'use strict';
const http = require('http');
const path = require('path');
const aws4 = require('aws4');
const S3rver = require('s3rver');
const AWSAccount = require('s3rver/lib/models/account');

const [dataDir, ...buckets] = process.argv.slice(2);
if (!dataDir || buckets.length === 0) {
  console.error('usage: node s3-server.js <data-dir> <bucket>...');
  process.exit(2);
}
const secrets = { S3RVER: 'S3RVER', CKBTESTKEY: 'ckb-test-secret/+=' };
AWSAccount.DUMMY_ACCOUNT.createKeyPair('CKBTESTKEY', secrets.CKBTESTKEY);

function reject(res, status, code, message) {
  res.writeHead(status, { 'Content-Type': 'application/xml' });
  res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
          `<Message>${message}</Message></Error>`);
}

// null when the request's signature is right (or it carries none), else the reason.
function signatureProblem(req) {
  const auth = req.headers['authorization'];
  if (!auth) return null;
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return 'malformed Authorization header';
  const [, accessKey, , region, service, signedHeaders, signature] = m;
  const secret = secrets[accessKey];
  if (secret === undefined) return null;  // s3rver answers InvalidAccessKeyId
  const names = signedHeaders.split(';');
  for (const required of ['host', 'x-amz-date', 'x-amz-content-sha256']) {
    if (!names.includes(required)) return `${required} is not signed`;
  }
  const headers = {};
  for (const name of names) {
    if (req.headers[name] === undefined) return `signed header ${name} is missing`;
    headers[name] = req.headers[name];
  }
  const signed = aws4.sign({ method: req.method, path: req.url, host: req.headers.host, headers,
                             service, region }, { accessKeyId: accessKey, secretAccessKey: secret });
  const expected = /Signature=([0-9a-f]{64})/.exec(signed.headers.Authorization)[1];
  return expected === signature ? null : 'signature mismatch';
}

async function main() {
  const s3 = new S3rver({ directory: path.resolve(dataDir), silent: true,
                          configureBuckets: buckets.map(name => ({ name })) });
  await s3.configureBuckets();
  const handle = s3.callback();
  const server = http.createServer((req, res) => {
    const problem = signatureProblem(req);
    if (problem) {
      req.resume();
      return reject(res, 403, 'SignatureDoesNotMatch',
                    `The request signature we calculated does not match the signature you provided (${problem}).`);
    }
    handle(req, res);
  });
  server.keepAliveTimeout = 30000;
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`LISTENING ${server.address().port}\n`);
  });
}
main().catch(err => { console.error(err); process.exit(1); });
