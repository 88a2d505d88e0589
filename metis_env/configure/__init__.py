"""`metis-env configure TOOL`: the AI tools' own config files (one module per tool), merged, backed up, never holding a key where the tool can ask for one."""
