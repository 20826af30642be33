{{ lago_cdc.bronze_cdc('loyalty', 'transacao_produto') }}
