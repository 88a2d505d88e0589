"""The SSH source: endpoint files from the SambaNova login node (config, known hosts, login, SFTP, --via openssh). The only package that imports paramiko."""
