"""Search methods: the contract (base), the one search stage (stage), and one package per
method holding what only that method uses."""
