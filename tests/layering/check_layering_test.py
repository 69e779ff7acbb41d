#!/usr/bin/env python3
"""The layering check itself: it passes a clean tree and reports each kind of
reach into another service (an include, a linked target) in a made-up one."""
import os
import subprocess
import sys
import tempfile

CHECK = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                     'check_layering.py')


def write(root, path, text):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, 'w', encoding='utf-8') as f:
        f.write(text)


def run(root):
    done = subprocess.run([sys.executable, CHECK, root], capture_output=True,
                          text=True, check=False)
    return done.returncode, done.stdout


def main():
    failures = []
    with tempfile.TemporaryDirectory() as root:
        write(root, 'services/a/CMakeLists.txt',
              'crm_cc_library(\n  NAME crm_a_lib\n  SRCS a.cc\n'
              '  DEPS crm_common_log crm_a_v1_proto)\n')
        write(root, 'services/a/a.cc',
              '#include "common/log/log.h"\n#include "crm/b/v1/b.pb.h"\n')
        write(root, 'services/b/CMakeLists.txt',
              'crm_cc_library(\n  NAME crm_b_lib\n  SRCS b.cc\n'
              '  DEPS crm_common_log)\n')
        write(root, 'services/b/b.cc', '#include "services/b/b.h"\n')
        code, out = run(root)
        if code != 0:
            failures.append(f'clean tree refused:\n{out}')
        # b includes a's code, and links a's target.
        write(root, 'services/b/b.cc', '#include "services/a/a.h"\n')
        write(root, 'services/b/CMakeLists.txt',
              'crm_cc_library(\n  NAME crm_b_lib\n  SRCS b.cc\n'
              '  DEPS crm_common_log crm_a_lib)\n')
        code, out = run(root)
        if code != 1:
            failures.append(f'violations passed (exit {code}):\n{out}')
        if 'services/b/b.cc:1: includes services/a/' not in out:
            failures.append(f'the include was not reported:\n{out}')
        if 'links crm_a_lib, a target of services/a' not in out:
            failures.append(f'the linked target was not reported:\n{out}')
    for failure in failures:
        print(failure)
    print('FAILED' if failures else 'OK: the check passes a clean tree and'
          ' reports an include and a link across services')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
