#!/usr/bin/python3
"""grpcurl-style server reflection against the real crm-pipeline-config.

Does in Python what these do, with nothing but Debian's python3-grpcio,
python3-protobuf and protoc:

  grpcurl -plaintext 127.0.0.1:PORT list
  grpcurl -plaintext 127.0.0.1:PORT describe crm.pipelines.v1.PipelinesService
  grpcurl -plaintext -H 'authorization: Bearer ...' -d '{"pipeline_id": 0}' \
      127.0.0.1:PORT crm.pipelines.v1.PipelinesService/GetPipeline

The reflection messages come from Debian's reflection.proto compiled with
protoc at test time (gRPC 1.51 serves only grpc.reflection.v1alpha); the
service's own messages come only from the descriptors the server returns.

Run (ctest does this):
  /usr/bin/python3 reflection_test.py --binary <crm-pipeline-config> \
      --token-tool <crm-dev-token> [unittest args]
"""

import argparse
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import grpc
from google.protobuf import descriptor
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory

REFLECTION_PROTO_ROOT = '/usr/share/grpc-proto'
REFLECTION_PROTO = 'grpc/reflection/v1alpha/reflection.proto'
REFLECTION_METHOD = (
    '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo')
JWT_SECRET = 'reflection-test-secret-0123456789'
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 5
CALL_TIMEOUT_S = 10

PIPELINES_SERVICE = 'crm.pipelines.v1.PipelinesService'
EXPECTED_SERVICES = {
    PIPELINES_SERVICE,
    'crm.pipelines.v1.DealFieldsService',
    'crm.pipelines.v1.AccessService',
    'grpc.health.v1.Health',
    'grpc.reflection.v1alpha.ServerReflection',
}
DEFAULT_STAGE_IDS = [
    'NEW', 'PREPARATION', 'PREPAYMENT_INVOICE', 'EXECUTING', 'FINAL_INVOICE',
    'WON', 'LOSE', 'APOLOGY'
]

# Set by main() from the command line.
ARGS = None


def compile_reflection_module(out_dir):
    """protoc --python_out for reflection.proto; returns the loaded module.

    The generated file would be the module grpc.reflection.v1alpha.
    reflection_pb2, which clashes with the grpc package, so it is loaded from
    its path under a private name.
    """
    protoc = shutil.which('protoc') or '/usr/bin/protoc'
    os.makedirs(out_dir, exist_ok=True)
    subprocess.run([
        protoc, '-I' + REFLECTION_PROTO_ROOT, '--python_out=' + out_dir,
        REFLECTION_PROTO
    ],
                   check=True)
    path = os.path.join(out_dir,
                        REFLECTION_PROTO.replace('.proto', '_pb2.py'))
    spec = importlib.util.spec_from_file_location(
        'crm_reflection_test_v1alpha_pb2', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child_env():
    """The environment without CRM_* variables (flags are explicit)."""
    return {k: v for k, v in os.environ.items() if not k.startswith('CRM_')}


def message_class(pool, full_name):
    """The message class of a type in `pool` (protobuf 3.21/4.21 and later)."""
    desc = pool.FindMessageTypeByName(full_name)
    get_message_class = getattr(message_factory, 'GetMessageClass', None)
    if get_message_class is not None:
        return get_message_class(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def describe_service(service):
    """Roughly what `grpcurl describe <service>` prints."""
    lines = ['%s is a service:' % service.full_name,
             'service %s {' % service.name]
    for method in service.methods:
        lines.append('  rpc %s ( .%s ) returns ( .%s );' %
                     (method.name, method.input_type.full_name,
                      method.output_type.full_name))
    lines.append('}')
    return '\n'.join(lines)


class ReflectionTest(unittest.TestCase):
    """One server for all tests; started and stopped by the class."""

    @classmethod
    def setUpClass(cls):
        cls.temp = tempfile.TemporaryDirectory(prefix='crm-reflection-')
        cls.server = None
        cls.channel = None
        cls.log = None
        try:
            cls._start()
        except BaseException:
            cls._stop_server(check=False)
            raise

    @classmethod
    def _start(cls):
        cls.reflection = compile_reflection_module(
            os.path.join(cls.temp.name, 'gen'))
        cls.token = subprocess.run(
            [ARGS.token_tool, '--user=1', '--secret=' + JWT_SECRET],
            check=True,
            capture_output=True,
            text=True,
            env=child_env()).stdout.strip()
        port_file = os.path.join(cls.temp.name, 'ports')
        cls.log_path = os.path.join(cls.temp.name, 'server.log')
        cls.log = open(cls.log_path, 'wb')
        cls.server = subprocess.Popen(
            [
                ARGS.binary, '--port=0', '--http_port=0',
                '--port_file=' + port_file,
                '--data_dir=' + os.path.join(cls.temp.name, 'data'),
                '--jwt_secret=' + JWT_SECRET, '--listen_host=127.0.0.1',
                '--seed_demo=false'
            ],
            stdin=subprocess.DEVNULL,
            stdout=cls.log,
            stderr=subprocess.STDOUT,
            env=child_env())
        grpc_port = cls._wait_for_port(port_file)
        cls.channel = grpc.insecure_channel('127.0.0.1:%d' % grpc_port)
        cls._wait_for_serving()

    @classmethod
    def tearDownClass(cls):
        cls._stop_server(check=True)

    @classmethod
    def _server_log(cls):
        with open(cls.log_path, 'rb') as f:
            return f.read().decode(errors='replace')

    @classmethod
    def _wait_for_port(cls, port_file):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if cls.server.poll() is not None:
                raise RuntimeError('server exited with %d before serving:\n%s' %
                                   (cls.server.returncode, cls._server_log()))
            try:
                with open(port_file) as f:
                    lines = f.read().split('\n')
                if len(lines) >= 3 and lines[0]:
                    return int(lines[0])
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        raise RuntimeError('no port file after %d s' % START_TIMEOUT_S)

    @classmethod
    def _wait_for_serving(cls):
        # grpc.health.v1.Health/Check with raw bytes: an empty request (service
        # ""), and the answer b'\x08\x01' is status SERVING.
        check = cls.channel.unary_unary('/grpc.health.v1.Health/Check')
        deadline = time.monotonic() + START_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            try:
                if check(b'', timeout=1) == b'\x08\x01':
                    return
            except grpc.RpcError as error:
                last = error
            time.sleep(0.01)
        raise RuntimeError('health not SERVING after %d s: %s' %
                           (START_TIMEOUT_S, last))

    @classmethod
    def _stop_server(cls, check):
        # Close the client connection first: an idle connection would delay
        # the server's graceful GOAWAY by up to 5 s.
        if cls.channel is not None:
            cls.channel.close()
            cls.channel = None
        try:
            if cls.server is None:
                return
            if cls.server.poll() is None:
                cls.server.send_signal(signal.SIGTERM)
                try:
                    cls.server.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    cls.server.kill()
                    cls.server.wait()
                    if check:
                        raise AssertionError(
                            'server did not exit within %d s of SIGTERM' %
                            STOP_TIMEOUT_S)
            if check and cls.server.returncode != 0:
                raise AssertionError(
                    'server exited with %d after SIGTERM:\n%s' %
                    (cls.server.returncode, cls._server_log()))
        finally:
            if cls.log is not None:
                cls.log.close()
            cls.temp.cleanup()

    # --- reflection helpers ---------------------------------------------------

    def reflect(self, *requests):
        """One ServerReflectionInfo stream; one response per request."""
        ref = self.reflection
        call = self.channel.stream_stream(
            REFLECTION_METHOD,
            request_serializer=ref.ServerReflectionRequest.SerializeToString,
            response_deserializer=ref.ServerReflectionResponse.FromString)
        responses = list(call(iter(requests), timeout=CALL_TIMEOUT_S))
        self.assertEqual(len(responses), len(requests))
        return responses

    def file_protos(self, response):
        self.assertEqual(response.WhichOneof('message_response'),
                         'file_descriptor_response', str(response))
        protos = []
        for serialized in response.file_descriptor_response.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto()
            proto.ParseFromString(serialized)
            protos.append(proto)
        return protos

    def build_pool(self, symbol):
        """Like grpcurl: the file defining `symbol`, then whatever dependency
        the server did not send along, fetched by file name. Returns the pool
        and the FileDescriptorProtos by name."""
        ref = self.reflection
        (response,) = self.reflect(
            ref.ServerReflectionRequest(file_containing_symbol=symbol))
        files = {p.name: p for p in self.file_protos(response)}
        self.assertTrue(files, 'no file for %s' % symbol)
        fetched_by_name = 0
        while True:
            missing = sorted({
                dep for p in files.values() for dep in p.dependency
                if dep not in files
            })
            if not missing:
                break
            responses = self.reflect(*[
                ref.ServerReflectionRequest(file_by_filename=name)
                for name in missing
            ])
            fetched_by_name += len(missing)
            for name, fetched in zip(missing, responses):
                protos = self.file_protos(fetched)
                self.assertIn(name, [p.name for p in protos])
                for p in protos:
                    files.setdefault(p.name, p)
        # A fresh pool: the default one holds google/protobuf/* already.
        pool = descriptor_pool.DescriptorPool()
        added = set()

        def add(name):
            if name in added:
                return
            added.add(name)
            for dep in files[name].dependency:
                add(dep)
            pool.AddSerializedFile(files[name].SerializeToString())

        for name in sorted(files):
            add(name)
        print('\n%s: %d files, %d fetched by file name' %
              (symbol, len(files), fetched_by_name))
        return pool, files

    # --- tests ------------------------------------------------------------------

    def test_list_services(self):
        """grpcurl list."""
        (response,) = self.reflect(
            self.reflection.ServerReflectionRequest(list_services=''))
        self.assertEqual(response.WhichOneof('message_response'),
                         'list_services_response', str(response))
        names = {s.name for s in response.list_services_response.service}
        print('\nlist:\n  ' + '\n  '.join(sorted(names)))
        self.assertLessEqual(EXPECTED_SERVICES, names)

    def test_describe_pipelines_service(self):
        """grpcurl describe crm.pipelines.v1.PipelinesService."""
        pool, files = self.build_pool(PIPELINES_SERVICE)
        self.assertIn('crm/pipelines/v1/pipelines_service.proto', files)
        service = pool.FindServiceByName(PIPELINES_SERVICE)
        print('\n' + describe_service(service))
        method = service.methods_by_name['GetPipeline']
        self.assertEqual(method.input_type.full_name,
                         'crm.pipelines.v1.GetPipelineRequest')
        self.assertEqual(method.output_type.full_name,
                         'crm.pipelines.v1.Pipeline')
        request = pool.FindMessageTypeByName(
            'crm.pipelines.v1.GetPipelineRequest')
        self.assertEqual(request.fields_by_name['pipeline_id'].type,
                         descriptor.FieldDescriptor.TYPE_INT64)
        # Streaming shows in the FileDescriptorProto (grpcurl prints "stream").
        service_proto = next(
            s for s in files['crm/pipelines/v1/pipelines_service.proto'].service
            if s.name == 'PipelinesService')
        watch = next(m for m in service_proto.method if m.name == 'WatchConfig')
        self.assertTrue(watch.server_streaming)
        self.assertFalse(watch.client_streaming)
        # Types of other files resolve through the fetched dependencies.
        stage = pool.FindMessageTypeByName('crm.pipelines.v1.Stage')
        self.assertEqual(stage.fields_by_name['create_time'].message_type.full_name,
                         'google.protobuf.Timestamp')

    def test_file_by_filename(self):
        """What grpcurl asks for a dependency it was not sent."""
        ref = self.reflection
        names = ['crm/pipelines/v1/pipeline.proto',
                 'google/protobuf/timestamp.proto']
        responses = self.reflect(
            *[ref.ServerReflectionRequest(file_by_filename=n) for n in names])
        for name, response in zip(names, responses):
            self.assertIn(name, [p.name for p in self.file_protos(response)])

    def test_describe_health_service(self):
        """grpcurl describe grpc.health.v1.Health.

        gRPC C++'s default health service is not built from health.proto; the
        server links the health descriptors so that reflection can describe it.
        """
        pool, _ = self.build_pool('grpc.health.v1.Health')
        self.assertIn('Check',
                      pool.FindServiceByName('grpc.health.v1.Health')
                      .methods_by_name)

    def test_dynamic_get_pipeline_call(self):
        """grpcurl -d '{"pipeline_id": 0}' ... PipelinesService/GetPipeline."""
        pool, _ = self.build_pool(PIPELINES_SERVICE)
        method = pool.FindServiceByName(
            PIPELINES_SERVICE).methods_by_name['GetPipeline']
        request_class = message_class(pool, method.input_type.full_name)
        response_class = message_class(pool, method.output_type.full_name)
        call = self.channel.unary_unary(
            '/%s/%s' % (PIPELINES_SERVICE, method.name),
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString)
        request = request_class(pipeline_id=0)

        reply = call(request,
                     metadata=[('authorization', 'Bearer ' + self.token)],
                     timeout=CALL_TIMEOUT_S)
        self.assertEqual(reply.id, 0)
        self.assertTrue(reply.is_default)
        self.assertEqual(len(reply.stages), 8)
        self.assertEqual([s.stage_id for s in reply.stages], DEFAULT_STAGE_IDS)

        with self.assertRaises(grpc.RpcError) as raised:
            call(request, timeout=CALL_TIMEOUT_S)
        self.assertEqual(raised.exception.code(),
                         grpc.StatusCode.UNAUTHENTICATED)

    def test_unknown_symbol_is_not_found(self):
        (response,) = self.reflect(
            self.reflection.ServerReflectionRequest(
                file_containing_symbol='crm.pipelines.v1.NoSuchService'))
        self.assertEqual(response.WhichOneof('message_response'),
                         'error_response', str(response))
        self.assertEqual(response.error_response.error_code,
                         grpc.StatusCode.NOT_FOUND.value[0])


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--binary', required=True,
                        help='the crm-pipeline-config binary')
    parser.add_argument('--token-tool', required=True,
                        help='the crm-dev-token binary')
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == '__main__':
    main()
