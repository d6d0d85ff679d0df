#!/bin/sh
# Proves the core is portable: its objects reference no heap, socket, file or
# clock function. Usage: check-core-symbols.sh libmoat_core.a
set -eu
lib=$1
forbidden='malloc|calloc|realloc|free|aligned_alloc|posix_memalign|strdup|socket|connect|bind|listen|accept|send|sendto|sendmsg|recv|recvfrom|recvmsg|read|write|open|openat|close|fopen|fclose|fread|fwrite|fprintf|printf|puts|poll|select|epoll_wait|time|clock|clock_gettime|gettimeofday|sleep|usleep|nanosleep|getaddrinfo|rand|random|srand|exit|abort'
undefined=$(nm -u "$lib" | awk '{print $NF}' | sed 's/@.*//' | sort -u)
bad=$(printf '%s\n' "$undefined" | awk -v re="^($forbidden)\$" '$0 ~ re')
if [ -n "$bad" ]; then
    echo "FAIL: the core references forbidden functions:"
    for s in $bad; do
        printf '  %s in ' "$s"
        nm -A -u "$lib" | grep -w "$s" | cut -d: -f2 | sort -u | tr '\n' ' '
        echo
    done
    exit 1
fi
count=$(printf '%s\n' "$undefined" | awk 'NF' | wc -l)
echo "ok: $(basename "$lib") references $count external symbols, none of heap, I/O or clock:"
printf '%s\n' "$undefined" | tr '\n' ' '
echo
