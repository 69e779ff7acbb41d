#!/usr/bin/python3
"""Every service binary as an operator and an attacker meet it.

Starts the real crm-pipeline-config, crm-deals and crm-automation on loopback
(each with its own secret-protected data folder, no --admin_users) and checks:

  * every method of every service the server lists through reflection,
    except grpc.health.v1.Health and reflection itself, answers
    UNAUTHENTICATED to a call without a token, with a malformed one, with a
    well-formed token signed with another secret (user, admin and service
    identities) and with an expired token signed with the right secret; and
    that a valid token is not refused as UNAUTHENTICATED;
  * no user is an administrator unless the operator says so (a plain user
    token cannot create a pipeline);
  * the health service answers SERVING for "" and for every listed service
    name;
  * a binary refuses to start without a secret (unless --insecure_dev_auth),
    with a too short one, with an environment value that does not parse
    (CRM_SYNC_WRITES=enabled) and with a stray positional argument, naming
    the problem; --help lists the service's flags; --version prints the
    version and commit.

Requests are sent as raw bytes (an empty message is valid for every request
type), so nothing here needs the services' .proto files: the method list and
their streaming kinds come from the server's reflection answers.

Run (ctest does this):
  /usr/bin/python3 operator_test.py --pipeline-config BIN --deals BIN \
      --automation BIN [unittest args]
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import grpc
from google.protobuf import descriptor_pb2

SECRET = 'operator-test-secret-0123456789abcdef'
OTHER_SECRET = 'somebody-elses-secret-0123456789ab'
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10
CALL_TIMEOUT_S = 5
STREAM_TIMEOUT_S = 1.5

REFLECTION_METHOD = (
    '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo')
UNGUARDED_SERVICES = {
    'grpc.health.v1.Health', 'grpc.reflection.v1alpha.ServerReflection'
}

ARGS = None


# --- protobuf wire format, by hand (the reflection messages are tiny) -------


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def string_field(number, text):
    data = text.encode()
    return varint(number << 3 | 2) + varint(len(data)) + data


def read_varint(data, pos):
    result = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data):
    """(number, wire type, value) of a serialized message; length-delimited
    values as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(data, pos)
        elif wire == 2:
            size, pos = read_varint(data, pos)
            value = data[pos:pos + size]
            pos += size
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError('wire type %d' % wire)
        yield number, wire, value


# ServerReflectionRequest: 4 file_containing_symbol, 7 list_services.
# ServerReflectionResponse: 4 file_descriptor_response {1 repeated bytes},
# 6 list_services_response {1 repeated ServiceResponse {1 name}},
# 7 error_response.
def reflect(channel, request):
    call = channel.stream_stream(REFLECTION_METHOD)
    (response,) = list(call(iter([request]), timeout=CALL_TIMEOUT_S))
    return response


def list_services(channel):
    response = reflect(channel, string_field(7, ''))
    names = []
    for number, _, value in fields(response):
        if number == 6:
            for inner_number, _, service in fields(value):
                if inner_number == 1:
                    names.extend(v.decode() for n, _, v in fields(service)
                                 if n == 1)
    return names


def service_methods(channel, service):
    """[(method name, client streaming, server streaming)] of `service`."""
    response = reflect(channel, string_field(4, service))
    package, _, short_name = service.rpartition('.')
    for number, _, value in fields(response):
        if number != 4:
            continue
        for inner_number, _, serialized in fields(value):
            if inner_number != 1:
                continue
            proto = descriptor_pb2.FileDescriptorProto()
            proto.ParseFromString(serialized)
            if proto.package != package:
                continue
            for candidate in proto.service:
                if candidate.name == short_name:
                    return [(m.name, m.client_streaming, m.server_streaming)
                            for m in candidate.method]
    raise AssertionError('reflection did not describe %s' % service)


# --- tokens -------------------------------------------------------------------


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode()


def jwt(claims, secret):
    header = b64url(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())
    payload = b64url(json.dumps(claims).encode())
    signing_input = (header + '.' + payload).encode()
    signature = hmac.new(secret.encode(), signing_input,
                         hashlib.sha256).digest()
    return header + '.' + payload + '.' + b64url(signature)


def user_claims(user, admin=False, exp_in_s=3600):
    now = int(time.time())
    claims = {'sub': str(user), 'iat': now, 'exp': now + exp_in_s}
    if admin:
        claims['admin'] = True
    return claims


def service_claims(name, exp_in_s=3600):
    now = int(time.time())
    return {
        'sub': 'service:' + name,
        'svc': name,
        'iat': now,
        'exp': now + exp_in_s
    }


def bad_credentials():
    """(label, metadata) of every kind of bad credential."""
    return [
        ('no token', []),
        ('not a bearer header', [('authorization', 'Basic dXNlcjpwdw==')]),
        ('malformed token', [('authorization', 'Bearer not.a.jwt')]),
        ('forged admin token',
         [('authorization',
           'Bearer ' + jwt(user_claims(1, admin=True), OTHER_SECRET))]),
        ('forged service token',
         [('authorization',
           'Bearer ' + jwt(service_claims('deals'), OTHER_SECRET))]),
        ('unsigned token',
         [('authorization', 'Bearer ' + b64url(
             json.dumps({'alg': 'none', 'typ': 'JWT'}).encode()) + '.' +
           b64url(json.dumps(user_claims(1, admin=True)).encode()) + '.')]),
        ('expired admin token',
         [('authorization', 'Bearer ' +
           jwt(user_claims(1, admin=True, exp_in_s=-3600), SECRET))]),
        ('expired service token',
         [('authorization',
           'Bearer ' + jwt(service_claims('deals', exp_in_s=-3600), SECRET))]),
    ]


def call_code(channel, method_path, client_streaming, server_streaming,
              metadata):
    """The status code of one call with an empty request."""
    timeout = STREAM_TIMEOUT_S if server_streaming else CALL_TIMEOUT_S
    try:
        if client_streaming and server_streaming:
            responses = channel.stream_stream(method_path)(
                iter([b'']), metadata=metadata, timeout=timeout)
            for _ in responses:
                pass
        elif client_streaming:
            channel.stream_unary(method_path)(
                iter([b'']), metadata=metadata, timeout=timeout)
        elif server_streaming:
            for _ in channel.unary_stream(method_path)(
                    b'', metadata=metadata, timeout=timeout):
                pass
        else:
            channel.unary_unary(method_path)(
                b'', metadata=metadata, timeout=timeout)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


# --- processes ----------------------------------------------------------------


def child_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith('CRM_')}
    env.update(extra or {})
    return env


class Service:
    """One running service binary."""

    def __init__(self, name, binary, root, args):
        self.name = name
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        port_file = os.path.join(self.dir, 'ports')
        self.log_path = os.path.join(self.dir, 'log')
        self.log = open(self.log_path, 'wb')
        self.process = subprocess.Popen(
            [
                binary, '--port=0', '--http_port=0', '--port_file=' +
                port_file, '--data_dir=' + os.path.join(self.dir, 'data'),
                '--listen_host=127.0.0.1', '--log_level=warn'
            ] + args,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=child_env({'CRM_JWT_SECRET': SECRET}))
        self.channel = None
        self.port = self._wait_for_port(port_file)
        self.address = '127.0.0.1:%d' % self.port
        self.channel = grpc.insecure_channel(self.address)

    def _wait_for_port(self, port_file):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError('%s exited with %d before serving:\n%s' %
                                   (self.name, self.process.returncode,
                                    self.output()))
            try:
                with open(port_file) as f:
                    lines = f.read().split('\n')
                if len(lines) >= 3 and lines[0]:
                    return int(lines[0])
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        raise RuntimeError('%s: no port file after %d s' %
                           (self.name, START_TIMEOUT_S))

    def output(self):
        with open(self.log_path, 'rb') as f:
            return f.read().decode(errors='replace')

    def stop(self):
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def run_binary(binary, args, env=None, timeout=20):
    """Runs a binary to its end: (exit code, stdout + stderr)."""
    done = subprocess.run([binary] + args,
                          stdin=subprocess.DEVNULL,
                          capture_output=True,
                          text=True,
                          env=child_env(env),
                          timeout=timeout)
    return done.returncode, done.stdout + done.stderr


class RunningServicesTest(unittest.TestCase):
    """The three services, started once for all tests of the class."""

    @classmethod
    def setUpClass(cls):
        cls.temp = tempfile.TemporaryDirectory(prefix='crm-operator-')
        cls.services = []
        try:
            pipeline_config = Service('pipeline-config', ARGS.pipeline_config,
                                      cls.temp.name, [])
            cls.services.append(pipeline_config)
            deals = Service('deals', ARGS.deals, cls.temp.name, [
                '--pipeline_config_addr=' + pipeline_config.address
            ])
            cls.services.append(deals)
            cls.services.append(
                Service('automation', ARGS.automation, cls.temp.name, [
                    '--pipeline_config_addr=' + pipeline_config.address,
                    '--deals_addr=' + deals.address
                ]))
        except BaseException:
            cls._stop_all()
            raise

    @classmethod
    def _stop_all(cls):
        for service in reversed(cls.services):
            service.stop()
        cls.temp.cleanup()

    @classmethod
    def tearDownClass(cls):
        cls._stop_all()

    def guarded_methods(self, service):
        """[(service name, method, client streaming, server streaming)]."""
        names = list_services(service.channel)
        self.assertIn('grpc.health.v1.Health', names)
        methods = []
        for name in sorted(set(names) - UNGUARDED_SERVICES):
            for method, client_streaming, server_streaming in service_methods(
                    service.channel, name):
                methods.append((name, method, client_streaming,
                                server_streaming))
        return methods

    def test_every_method_refuses_bad_credentials(self):
        total = 0
        for service in self.services:
            methods = self.guarded_methods(service)
            self.assertTrue(methods, service.name)
            print('\n%s: %d methods' % (service.name, len(methods)))
            for name, method, client_streaming, server_streaming in methods:
                path = '/%s/%s' % (name, method)
                for label, metadata in bad_credentials():
                    with self.subTest(service=service.name,
                                      method=path,
                                      credentials=label):
                        code = call_code(service.channel, path,
                                         client_streaming, server_streaming,
                                         metadata)
                        self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED)
                    total += 1
        # 3 services with 3+1+2 guarded services between them.
        self.assertGreater(total, 100)

    def test_a_valid_token_gets_past_authentication(self):
        # The same walk with a valid administrator token: whatever the empty
        # request then earns (INVALID_ARGUMENT, NOT_FOUND, OK, a stream
        # deadline...), it is neither UNAUTHENTICATED nor an internal error,
        # so the refusals above come from the credentials alone.
        metadata = [('authorization',
                     'Bearer ' + jwt(user_claims(1, admin=True), SECRET))]
        for service in self.services:
            for name, method, client_streaming, server_streaming in (
                    self.guarded_methods(service)):
                path = '/%s/%s' % (name, method)
                with self.subTest(service=service.name, method=path):
                    code = call_code(service.channel, path, client_streaming,
                                     server_streaming, metadata)
                    self.assertNotIn(code, (grpc.StatusCode.UNAUTHENTICATED,
                                            grpc.StatusCode.UNKNOWN,
                                            grpc.StatusCode.INTERNAL,
                                            grpc.StatusCode.UNIMPLEMENTED))

    def test_no_built_in_administrator(self):
        pipeline_config = self.services[0]
        # CreatePipelineRequest{pipeline: Pipeline{name: "Ops"}}: field 1
        # holding field 2 (name) -- the same shape reflection describes.
        create = pipeline_config.channel.unary_unary(
            '/crm.pipelines.v1.PipelinesService/CreatePipeline')
        request = varint(1 << 3 | 2) + varint(5) + string_field(2, 'Ops')
        for user in (1, 2):
            with self.subTest(user=user):
                with self.assertRaises(grpc.RpcError) as raised:
                    create(request,
                           metadata=[('authorization',
                                      'Bearer ' + jwt(user_claims(user),
                                                      SECRET))],
                           timeout=CALL_TIMEOUT_S)
                self.assertEqual(raised.exception.code(),
                                 grpc.StatusCode.PERMISSION_DENIED)

    def test_health_answers_per_service_name(self):
        for service in self.services:
            check = service.channel.unary_unary('/grpc.health.v1.Health/Check')
            for name in [''] + sorted(
                    set(list_services(service.channel)) - UNGUARDED_SERVICES):
                with self.subTest(service=service.name, name=name):
                    request = string_field(1, name) if name else b''
                    # HealthCheckResponse{status: SERVING (1)}.
                    self.assertEqual(check(request, timeout=CALL_TIMEOUT_S),
                                     b'\x08\x01')
            with self.assertRaises(grpc.RpcError) as raised:
                check(string_field(1, 'no.such.Service'),
                      timeout=CALL_TIMEOUT_S)
            self.assertEqual(raised.exception.code(),
                             grpc.StatusCode.NOT_FOUND)


class StartupTest(unittest.TestCase):
    """Starts that must fail, and the operator's flags."""

    def setUp(self):
        self.temp = tempfile.TemporaryDirectory(prefix='crm-startup-')
        self.addCleanup(self.temp.cleanup)

    def binaries(self):
        return [('pipeline-config', ARGS.pipeline_config),
                ('deals', ARGS.deals), ('automation', ARGS.automation)]

    def base_args(self, name):
        return [
            '--port=0', '--http_port=-1',
            '--data_dir=' + os.path.join(self.temp.name, name)
        ]

    def assert_refused(self, binary, args, env, *expected):
        code, output = run_binary(binary, args, env)
        self.assertNotEqual(code, 0, output)
        for text in expected:
            self.assertIn(text, output)
        return output

    def assert_refused_before_the_store(self, name, binary, args, env,
                                        *expected):
        output = self.assert_refused(binary, args, env, *expected)
        # The data folder is created when the store opens: refused before.
        self.assertFalse(os.path.exists(os.path.join(self.temp.name, name)),
                         output)

    def test_refuses_to_start_without_a_secret(self):
        for name, binary in self.binaries():
            with self.subTest(binary=name):
                self.assert_refused_before_the_store(
                    name, binary, self.base_args(name), {},
                                    '--jwt_secret', 'required')

    def test_refuses_a_short_secret(self):
        for name, binary in self.binaries():
            with self.subTest(binary=name):
                self.assert_refused_before_the_store(
                    name, binary, self.base_args(name),
                    {'CRM_JWT_SECRET': 'short'},
                                    'at least 16 bytes')

    def test_refuses_environment_values_that_do_not_parse(self):
        for name, binary in self.binaries():
            for variable, value in (('CRM_SYNC_WRITES', 'enabled'),
                                    ('CRM_SHUTDOWN_GRACE_SECONDS', '10s')):
                with self.subTest(binary=name, variable=variable):
                    self.assert_refused_before_the_store(
                        name, binary, self.base_args(name), {
                        'CRM_JWT_SECRET': SECRET,
                        variable: value
                    }, '%s=%s' % (variable, value))

    def test_refuses_positional_arguments(self):
        for name, binary in self.binaries():
            with self.subTest(binary=name):
                self.assert_refused_before_the_store(
                    name, binary, self.base_args(name) + ['sync_writes'],
                                    {'CRM_JWT_SECRET': SECRET},
                                    "unexpected argument 'sync_writes'")

    def test_help_lists_the_service_flags(self):
        for name, binary in self.binaries():
            with self.subTest(binary=name):
                _, output = run_binary(binary, ['--help'])
                self.assertNotIn('No flags matched', output)
                for flag in ('--data_dir', '--port', '--jwt_secret',
                             '--admin_users', '--sync_writes'):
                    self.assertIn(flag, output)
                self.assertIn('Usage: crm-%s' % name, output)

    def test_version_names_the_commit(self):
        for name, binary in self.binaries():
            with self.subTest(binary=name):
                code, output = run_binary(binary, ['--version'])
                self.assertEqual(code, 0, output)
                self.assertRegex(output,
                                 r'^crm-%s \d+\.\d+\.\d+ \(commit [^)]+\)\n$' %
                                 name)


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pipeline-config', required=True)
    parser.add_argument('--deals', required=True)
    parser.add_argument('--automation', required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == '__main__':
    main()
