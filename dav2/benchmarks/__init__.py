"""dav2-bench: latency, throughput, memory and accuracy of every backend x precision x size."""
