#!/usr/bin/env python3
"""Fails when one service reaches into another.

A service is a directory services/<name>. Its files may include code of
common/ and the generated API stubs (crm/<package>/v1/...), never a file of
services/<other>; its CMake targets may link common and proto targets, never a
target defined under services/<other>. Code that two services share belongs
in common/; tests that run two services together live under tests/.

Usage: check_layering.py <source root>
Prints every violation (file:line: what) and exits 1 if there is any.
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"services/([^/"]+)/')
TARGET_DEF = re.compile(r'crm_cc_(?:library|binary|test)\s*\(\s*NAME\s+(\S+)', re.S)
CALL = re.compile(r'(\w+)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)', re.S)
SOURCE_EXTS = ('.cc', '.h', '.proto', '.py', '.sh')


def service_of(root, path):
    rel = os.path.relpath(path, os.path.join(root, 'services'))
    return rel.split(os.sep)[0]


def walk(top):
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if not d.startswith('.')]
        for name in filenames:
            yield os.path.join(dirpath, name)


def main(root):
    services_dir = os.path.join(root, 'services')
    services = sorted(d for d in os.listdir(services_dir)
                      if os.path.isdir(os.path.join(services_dir, d)))
    # Which service defines each target.
    owner = {}
    cmake_files = [p for p in walk(services_dir)
                   if os.path.basename(p) == 'CMakeLists.txt']
    for path in cmake_files:
        with open(path, encoding='utf-8') as f:
            text = f.read()
        for name in TARGET_DEF.findall(text):
            owner[name] = service_of(root, path)
    problems = []
    for path in walk(services_dir):
        service = service_of(root, path)
        rel = os.path.relpath(path, root)
        if path.endswith(SOURCE_EXTS):
            with open(path, encoding='utf-8', errors='replace') as f:
                for number, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if m and m.group(1) != service:
                        problems.append(
                            f'{rel}:{number}: includes services/{m.group(1)}/'
                            f' (service {service} may use common/ and the API'
                            f' stubs only)')
        elif os.path.basename(path) == 'CMakeLists.txt':
            with open(path, encoding='utf-8') as f:
                text = f.read()
            for call, args in CALL.findall(text):
                for token in re.findall(r'[A-Za-z_][\w:]*', args):
                    other = owner.get(token)
                    if other is not None and other != service:
                        number = text[:text.find(token)].count('\n') + 1
                        problems.append(
                            f'{rel}:{number}: {call}() links {token}, a target'
                            f' of services/{other}')
    for problem in problems:
        print(problem)
    if problems:
        print(f'{len(problems)} layering violation(s)')
        return 1
    print(f'layering: {len(services)} services ({", ".join(services)}),'
          f' {len(owner)} targets, no service reaches into another')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else '.'))
