// A real SOAP back end for tests/tests/soap.rs: the npm `soap` package (node-soap) serving a
// small SIMPEG-like service on 127.0.0.1 (an ephemeral port, printed as `{"port": N}`).
//
//   node server.js LOG [1.2]
//
// Every envelope the server receives is appended to LOG (one JSON line: the raw XML and the
// SOAPAction header), so a test can prove what reached the back end and what did not. With
// `1.2` the server answers in SOAP 1.2 envelopes and its WSDL has a SOAP 1.2 binding.
'use strict';
const fs = require('fs');
const http = require('http');
const soap = require('soap');

const log = process.argv[2];
const v12 = process.argv[3] === '1.2';
const wsdlSoap = v12 ? 'http://schemas.xmlsoap.org/wsdl/soap12/' : 'http://schemas.xmlsoap.org/wsdl/soap/';

const ops = ['GetPegawai', 'HapusPegawai', 'GagalPegawai'];
const wsdl = `<?xml version="1.0" encoding="UTF-8"?>
<definitions name="Simpeg" targetNamespace="urn:simpeg"
  xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:tns="urn:simpeg"
  xmlns:soap="${wsdlSoap}" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <types>
    <xsd:schema targetNamespace="urn:simpeg" elementFormDefault="unqualified">
      <xsd:element name="GetPegawai"><xsd:complexType><xsd:sequence><xsd:element name="nip" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="GetPegawaiResponse"><xsd:complexType><xsd:sequence>
        <xsd:element name="nip" type="xsd:string"/><xsd:element name="nama" type="xsd:string"/>
        <xsd:element name="jabatan" type="xsd:string" maxOccurs="unbounded"/>
        <xsd:element name="pengguna" type="xsd:string"/>
      </xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="HapusPegawai"><xsd:complexType><xsd:sequence><xsd:element name="nip" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="HapusPegawaiResponse"><xsd:complexType><xsd:sequence><xsd:element name="ok" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="GagalPegawai"><xsd:complexType><xsd:sequence><xsd:element name="nip" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="GagalPegawaiResponse"><xsd:complexType><xsd:sequence><xsd:element name="ok" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
    </xsd:schema>
  </types>
  ${ops.map((o) => `<message name="${o}In"><part name="parameters" element="tns:${o}"/></message>
  <message name="${o}Out"><part name="parameters" element="tns:${o}Response"/></message>`).join('\n  ')}
  <portType name="SimpegPort">
    ${ops.map((o) => `<operation name="${o}"><input message="tns:${o}In"/><output message="tns:${o}Out"/></operation>`).join('\n    ')}
  </portType>
  <binding name="SimpegBinding" type="tns:SimpegPort">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    ${ops.map((o) => `<operation name="${o}"><soap:operation soapAction="urn:simpeg#${o}"/><input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>`).join('\n    ')}
  </binding>
  <service name="SimpegService">
    <port name="SimpegPort" binding="tns:SimpegBinding"><soap:address location="http://127.0.0.1:PORT/simpeg"/></port>
  </service>
</definitions>`;

function pengguna(headers) {
  const sec = headers && headers.Security;
  const token = sec && sec.UsernameToken;
  return token ? String(token.Username) : '-';
}

function password(headers) {
  const token = headers && headers.Security && headers.Security.UsernameToken;
  if (!token) return '-';
  return String(typeof token.Password === 'object' ? token.Password.$value : token.Password);
}

const service = {
  SimpegService: {
    SimpegPort: {
      GetPegawai(args, cb, headers) {
        if (args.nip === 'bocor') {
          // A broken back end that echoes the password it was sent.
          return { nip: args.nip, nama: password(headers), jabatan: [], pengguna: pengguna(headers) };
        }
        return { nip: args.nip, nama: 'Siti Rahayu', jabatan: ['Kepala Seksi', 'Plt. Kepala Bidang'], pengguna: pengguna(headers) };
      },
      HapusPegawai(args) {
        return { ok: `dihapus ${args.nip}` };
      },
      GagalPegawai(args) {
        if (v12) {
          throw { Fault: { Code: { Value: 'soap:Sender' }, Reason: { Text: `nip ${args.nip} tidak dikenal` } }, statusCode: 400 };
        }
        throw { Fault: { faultcode: 'soap:Client', faultstring: `nip ${args.nip} tidak dikenal` }, statusCode: 500 };
      },
    },
  },
};

const server = http.createServer((req, res) => {
  res.statusCode = 404;
  res.end();
});
server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  const s = soap.listen(server, { path: '/simpeg', services: service, xml: wsdl.replace('PORT', String(port)), forceSoap12Headers: v12 });
  s.log = (type, data, req) => {
    if (type === 'received') {
      fs.appendFileSync(log, JSON.stringify({ xml: String(data), soapaction: (req && req.headers.soapaction) || '', content_type: (req && req.headers['content-type']) || '' }) + '\n');
    }
  };
  process.stdout.write(JSON.stringify({ port }) + '\n');
});
