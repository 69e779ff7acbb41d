#!/usr/bin/env python3
"""crm_check_testonly() (cmake/CrmTargets.cmake): a made-up project whose
server links a TESTONLY fake must fail to configure, naming both targets; the
same project with the fake used only by a TESTONLY binary configures."""
import os
import subprocess
import sys
import tempfile

CMAKE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                         'cmake')

PROJECT = '''cmake_minimum_required(VERSION 3.22)
project(testonly_check LANGUAGES CXX)
list(APPEND CMAKE_MODULE_PATH {cmake_dir})
include(CrmTargets)
crm_cc_library(NAME fake_clock TESTONLY SRCS fake.cc HDRS fake.h)
crm_cc_library(NAME engine SRCS engine.cc HDRS engine.h DEPS {engine_deps})
crm_cc_binary(NAME server SRCS main.cc DEPS engine)
crm_cc_binary(NAME bench TESTONLY SRCS main.cc DEPS engine fake_clock)
crm_check_testonly()
'''


def configure(engine_deps):
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, 'CMakeLists.txt'), 'w', encoding='utf-8') as f:
            f.write(PROJECT.format(cmake_dir=os.path.abspath(CMAKE_DIR),
                                   engine_deps=engine_deps))
        for name in ('fake.cc', 'fake.h', 'engine.cc', 'engine.h', 'main.cc'):
            open(os.path.join(root, name), 'w', encoding='utf-8').close()
        done = subprocess.run(['cmake', '-S', root, '-B', os.path.join(root, 'b')],
                              capture_output=True, text=True, check=False)
        return done.returncode, done.stdout + done.stderr


def main():
    failures = []
    code, out = configure('')
    if code != 0:
        failures.append('a clean project failed to configure:\n' + out)
    code, out = configure('fake_clock')
    if code == 0:
        failures.append('a shipped library linking a TESTONLY one configured')
    elif 'engine depends on the TESTONLY library fake_clock' not in out:
        failures.append('the error does not name the targets:\n' + out)
    for failure in failures:
        print('FAIL:', failure)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
